"""fm-client: prepare recordIO-protobuf for factorization machines, launch and deploy FM jobs with the
SageMaker Python SDK (our FM image or the built-in algorithm), evaluate endpoints, and invoke them from Lambda."""

__version__ = "0.1.0"
