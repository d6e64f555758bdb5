"""A KServe-style transformer class (preprocess / postprocess around the model call) in front of a real Triton."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from .conftest import HandlerServer, post_json, request

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]

TRANSFORMER = textwrap.dedent(
    '''
    import numpy as np
    from aifunction_operator.handler import BadRequest

    LOADS = []


    class Digits:
        def __init__(self):
            self.names = [str(i) for i in range(10)]

        def load(self):
            LOADS.append(1)

        def preprocess(self, body, headers):
            if "instances" not in body:
                raise BadRequest('body needs "instances": a list of 64-pixel images')
            return {"image": np.asarray(body["instances"], dtype=np.float32).reshape(-1, 8, 8)}

        async def postprocess(self, outputs, headers):
            labels = outputs["label"][:, 0]
            return {"predictions": [self.names[i] for i in labels], "loads": len(LOADS),
                    "ce_type": headers.get("ce-type")}
    '''
)


@pytest.fixture(scope="module")
def transformer(start_handler, tmp_path_factory: pytest.TempPathFactory) -> HandlerServer:
    code = tmp_path_factory.mktemp("kserve-style")
    (code / "digits_transformer.py").write_text(TRANSFORMER)
    return start_handler(code, "digits_transformer:Digits")


def test_preprocess_model_postprocess(transformer: HandlerServer, digits_data) -> None:
    images, truth = digits_data
    reply = post_json(f"{transformer.url}/", {"instances": images[200:264].reshape(64, 64).tolist()})
    assert reply.status == 200, reply.body
    result = reply.json()
    predicted = np.array([int(p) for p in result["predictions"]])
    assert (predicted == truth[200:264]).mean() >= 0.95
    assert result["loads"] == 1


def test_load_runs_once_per_process(transformer: HandlerServer, digits_data) -> None:
    images, _ = digits_data
    for _ in range(3):
        assert post_json(f"{transformer.url}/invoke", {"instances": [images[0].ravel().tolist()]}).json()["loads"] == 1


def test_kserve_v1_predict_endpoint_reaches_the_same_code(transformer: HandlerServer, digits_data) -> None:
    images, truth = digits_data
    reply = post_json(f"{transformer.url}/v1/models/digits-fn:predict", {"instances": images[10:18].reshape(8, 64).tolist()})
    assert reply.status == 200, reply.body
    assert [int(p) for p in reply.json()["predictions"]] == truth[10:18].tolist()


def test_bad_request_from_preprocess_is_a_400(transformer: HandlerServer) -> None:
    reply = post_json(f"{transformer.url}/", {"pixels": []})
    assert reply.status == 400 and "instances" in reply.json()["error"]


def test_non_json_body_is_a_400(transformer: HandlerServer) -> None:
    reply = request(f"{transformer.url}/", b"1,2,3", {"Content-Type": "text/csv"})
    assert reply.status == 400 and "application/json" in reply.json()["error"]
    reply = request(f"{transformer.url}/", b"{oops", {"Content-Type": "application/json"})
    assert reply.status == 400 and "not valid JSON" in reply.json()["error"]


def test_cloudevent_data_goes_to_preprocess_with_attributes_in_headers(transformer: HandlerServer, digits_data) -> None:
    images, truth = digits_data
    reply = post_json(
        f"{transformer.url}/",
        {"instances": [images[9].ravel().tolist()]},
        {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/test", "ce-type": "dev.aifn.digit"},
    )
    assert reply.status == 200, reply.body
    assert reply.json()["predictions"] == [str(truth[9])] and reply.json()["ce_type"] == "dev.aifn.digit"
