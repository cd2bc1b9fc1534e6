"""Training, registration and promotion of the credit-risk model."""
