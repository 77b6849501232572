"""How runctl reaches a cloud API: client construction, endpoints and error classification.

This layer sits between the parts that talk to a cloud (providers, storage, the agent) and
:mod:`runctl.core`: one module per API family, so S3 storage and the EC2 provider share one
boto3 client cache and one mapping of AWS errors to :mod:`runctl.core.errors`, and neither
imports the other. Importing this package costs nothing: each client library loads on first use.
"""
