"""API Gateway faces: event shapes, the authorizer, /me, /health, the webhook request."""
