"""`aifn run`: serve AI functions on one machine with a real tritonserver."""
