"""The operator's control loop."""
