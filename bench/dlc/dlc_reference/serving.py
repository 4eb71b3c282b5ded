"""`serve`: start MMS through sagemaker_inference, exactly as the DLC images' entry points do."""

from sagemaker_inference import model_server

if __name__ == "__main__":
    model_server.start_model_server(handler_service="dlc_reference.handler_service")
