"""AWS: EC2 instances, EBS volumes, S3 storage — through boto3, created lazily."""
