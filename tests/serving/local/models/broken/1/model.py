"""Test model `broken`: fails to initialize, as a model with a missing artifact would."""


class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("broken test model: the weights file is missing")

    def execute(self, requests):
        raise RuntimeError("never reached")
