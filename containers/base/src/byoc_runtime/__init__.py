"""The SageMaker container contract runtime shared by every image of this project.

A model family supplies a training function and serving handlers; this package does the rest:
config parsing, the SM_* environment, script mode, failure reporting, signal handling, the HTTP
server, content-type codecs and model archives.
"""

__version__ = "0.1.0"
