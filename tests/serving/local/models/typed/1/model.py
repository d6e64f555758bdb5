"""Test model `typed`: returns each input it was given as `<name>_out`, unchanged."""

import triton_python_backend_utils as pb_utils

INPUTS = ("i32", "u8", "f32")


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            outputs = []
            for name in INPUTS:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    outputs.append(pb_utils.Tensor(f"{name}_out", tensor.as_numpy()))
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
