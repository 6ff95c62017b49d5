"""One Logger, Tracer and Metrics per container, shared by every module of the layer.

Service name, log level and metrics namespace come from the POWERTOOLS_* environment variables.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
