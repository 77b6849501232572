"""``runctl dashboard``'s web layer: a Starlette app (:mod:`runctl.web.app`), its server-rendered
pages (:mod:`runctl.web.pages`) and charts (:mod:`runctl.web.svg`), over the views of
:mod:`runctl.workflows.dashboard`. It sits at the CLI's level of the layers; nothing below
imports it, and Starlette is imported only when the dashboard is served.
"""
