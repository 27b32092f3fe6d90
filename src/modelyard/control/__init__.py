"""The SageMaker control plane: models, endpoint configs and endpoints, persisted."""
