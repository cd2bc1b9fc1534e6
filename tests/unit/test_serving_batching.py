"""serving/batching.py: merging, split order, isolation of a failing request, params groups.

The model is a small function on a real DataFrame that records each call; a threading.Event
holds the first call so that the next requests queue behind it, as they do in a busy worker.
The answers are written as MLflow's own serialiser (predictions_to_json) writes them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pandas as pd
import pytest

from serving.api_errors import ApiError, api_error
from serving.batching import Batcher, Pending, ScoredRequest, mlflow_serialiser, split_rows
from serving.context import RequestContext

POISON = -1.0  # a row the model fails on


class Model:
    def __init__(self, hold_first: bool = True):
        self.calls: list[tuple[list[float], object]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.hold_first = hold_first

    def predict(self, frame: pd.DataFrame, params=None):
        self.calls.append((frame["x"].tolist(), params))
        self.started.set()
        if self.hold_first and len(self.calls) == 1:
            assert self.release.wait(10)
        if (frame["x"] == POISON).any():
            raise api_error("model_error")
        scale = (params or {}).get("scale", 1)
        return pd.DataFrame({"double": frame["x"] * 2 * scale, "label": frame["x"] > 2})


def build_frame(columns, data):
    return pd.DataFrame(data, columns=columns)


def pending(values, params=None, request_id=None, deadline_in=30.0) -> Pending:
    context = RequestContext(request_id or f"r{values}", timeout=deadline_in)
    context.deadline = time.monotonic() + deadline_in
    key = json.dumps(params, sort_keys=True)
    return Pending(context, ["x"], [[v] for v in values], params, key)


def make(model: Model, **kwargs) -> Batcher:
    return Batcher(model.predict, build_frame, mlflow_serialiser(), **{"max_rows": 100, **kwargs})


async def run_with_first_held(batcher: Batcher, model: Model, first, others):
    """Score `first`; while the model holds it, queue `others`; then let it go."""
    first_task = asyncio.ensure_future(batcher.score(first))
    while not model.started.is_set():
        await asyncio.sleep(0.001)
    other_tasks = [asyncio.ensure_future(batcher.score(item)) for item in others]
    await asyncio.sleep(0)  # every other request is queued now
    model.release.set()
    return await asyncio.gather(first_task, *other_tasks)


def predictions(answer) -> list[float]:
    assert isinstance(answer, bytes), answer
    return [p["double"] for p in json.loads(answer)["predictions"]]


def test_a_lone_request_is_scored_at_once_in_one_call():
    model = Model(hold_first=False)
    batcher = make(model)
    answer = asyncio.run(asyncio.wait_for(batcher.score(pending([3.0])), 5))
    assert predictions(answer) == [6.0]
    assert model.calls == [([3.0], None)]


def test_queued_requests_share_one_call_and_get_their_own_rows_in_order():
    model = Model()
    batcher = make(model)
    others = [pending([1.0, 2.0]), pending([3.0]), pending([4.0, 5.0, 6.0])]
    answers = asyncio.run(run_with_first_held(batcher, model, pending([0.5]), others))
    assert [predictions(a) for a in answers] == [[1.0], [2.0, 4.0], [6.0], [8.0, 10.0, 12.0]]
    # the first alone, then the three queued ones in one call, in arrival order
    assert [values for values, _ in model.calls] == [[0.5], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]
    # each answer is the bytes MLflow writes for that request's rows alone (index from 0)
    alone = model.predict(build_frame(["x"], [[4.0], [5.0], [6.0]]))
    assert answers[3] == mlflow_serialiser()(alone)


def test_a_request_that_fails_the_merged_call_fails_alone():
    model = Model()
    batcher = make(model)
    others = [pending([1.0]), pending([2.0, POISON], request_id="bad"), pending([3.0])]
    answers = asyncio.run(run_with_first_held(batcher, model, pending([0.5]), others))
    assert predictions(answers[1]) == [2.0] and predictions(answers[3]) == [6.0]
    assert isinstance(answers[2], ApiError) and answers[2].code == "model_error"
    # merged call, then each member alone: only "bad" failed
    assert [values for values, _ in model.calls[1:]] == [
        [1.0, 2.0, POISON, 3.0],
        [1.0],
        [2.0, POISON],
        [3.0],
    ]


def test_only_requests_with_the_same_params_are_merged_and_params_reach_predict():
    model = Model()
    batcher = make(model)
    others = [
        pending([1.0], {"scale": 10}),
        pending([2.0]),
        pending([3.0], {"scale": 10}),
        pending([4.0]),
    ]
    answers = asyncio.run(run_with_first_held(batcher, model, pending([0.5]), others))
    assert [predictions(a) for a in answers] == [[1.0], [20.0], [4.0], [60.0], [8.0]]
    assert model.calls[1:] == [([1.0, 3.0], {"scale": 10}), ([2.0, 4.0], None)]


def test_a_batch_holds_at_most_max_rows_but_a_larger_request_is_scored_alone():
    model = Model()
    batcher = make(model, max_rows=3)
    others = [pending([1.0, 2.0]), pending([3.0]), pending([4.0]), pending([5.0] * 5)]
    answers = asyncio.run(run_with_first_held(batcher, model, pending([0.5]), others))
    assert [len(predictions(a)) for a in answers] == [1, 2, 1, 1, 5]
    assert [len(values) for values, _ in model.calls] == [1, 3, 1, 5]


def test_a_merged_call_past_the_deadline_is_not_retried():
    def predict(frame, params=None):
        calls.append(len(frame))
        raise api_error("timeout", timeout=1)

    calls: list[int] = []
    batcher = Batcher(predict, build_frame, mlflow_serialiser(), max_rows=100)
    items = [pending([1.0]), pending([2.0])]
    answers = batcher.score_batch(items)
    assert [a.code for a in answers] == ["timeout", "timeout"] and calls == [2]


def test_a_request_already_past_its_deadline_is_dropped_unscored():
    model = Model(hold_first=False)
    batcher = make(model)
    late = pending([1.0], deadline_in=-1.0)
    answer = asyncio.run(batcher.score(late))
    assert answer.code == "timeout" and model.calls == []


def test_max_wait_lets_a_lone_request_wait_for_company():
    model = Model(hold_first=False)
    batcher = make(model, max_wait=0.2)

    async def two_close_together():
        first = asyncio.ensure_future(batcher.score(pending([1.0])))
        await asyncio.sleep(0.01)
        return await asyncio.gather(first, batcher.score(pending([2.0])))

    answers = asyncio.run(two_close_together())
    assert [predictions(a) for a in answers] == [[2.0], [4.0]]
    assert model.calls == [([1.0, 2.0], None)]


def test_on_scored_sees_each_request_once_with_rows_outputs_params_and_latency():
    model = Model()
    batcher = make(model)
    seen: list[ScoredRequest] = []
    batcher.on_scored.append(seen.append)
    batcher.on_scored.append(lambda record: 1 / 0)  # a failing hook must not fail requests
    others = [pending([1.0], {"scale": 2}, request_id="a"), pending([2.0], {"scale": 2})]
    answers = asyncio.run(run_with_first_held(batcher, model, pending([0.5]), others))
    assert all(isinstance(a, bytes) for a in answers)
    record = next(r for r in seen if r.request_id == "a")
    assert len(seen) == 3 and record.data == [[1.0]] and record.params == {"scale": 2}
    assert record.outputs["double"].tolist() == [4.0] and record.batch_requests == 2
    assert record.latency_s >= record.queue_wait_s >= 0


@pytest.mark.parametrize(
    "outputs",
    [
        pd.DataFrame({"a": [1, 2, 3]}),
        pd.Series([1, 2, 3]),
        [1, 2, 3],
        pytest.param(__import__("numpy").array([1, 2, 3]), id="ndarray"),
    ],
)
def test_split_rows_cuts_every_row_type_in_order(outputs):
    items = [pending([0.0]), pending([0.0, 0.0])]
    first, second = split_rows(outputs, items)
    values = [first, second]
    values = [v.values.ravel().tolist() if hasattr(v, "iloc") else list(v) for v in values]
    assert values == [[1], [2, 3]]


def test_split_rows_refuses_an_output_of_the_wrong_length():
    assert split_rows([1, 2], [pending([0.0]), pending([0.0, 0.0])]) is None
    assert split_rows({"a": 1}, [pending([0.0])]) is None


def test_with_two_loops_a_request_arriving_while_one_call_runs_is_scored_at_once():
    model = Model()
    batcher = make(model, concurrency=2)
    others = [pending([1.0]), pending([2.0])]
    answers = asyncio.run(run_with_first_held(batcher, model, pending([0.5]), others))
    assert [predictions(a) for a in answers] == [[1.0], [2.0], [4.0]]
    # the second loop took the first queued request alone while the held call ran; the third
    # request queued behind both
    assert [values for values, _ in model.calls][0] == [0.5]
    assert sorted(len(values) for values, _ in model.calls[1:]) in ([1, 1], [2])


def test_a_request_after_the_queue_emptied_is_still_scored():
    model = Model(hold_first=False)
    batcher = make(model, concurrency=2)

    async def in_turns():
        return [await batcher.score(pending([float(i)])) for i in range(20)]

    answers = asyncio.run(asyncio.wait_for(in_turns(), 10))
    assert [predictions(a) for a in answers] == [[2.0 * i] for i in range(20)]


@pytest.mark.parametrize(
    "outputs",
    [
        pd.DataFrame(
            {
                "probability": [0.1234567890123, float("nan"), 1e-300],
                "label": [0, 1, 1],
                "decision": ["approve", "refuse", "zoë"],
                "flag": [True, False, True],
            }
        ),
        pd.Series([0.5, float("inf"), -2.0], name="score"),
        pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")}),
        __import__("numpy").array([[1.5, 2.0], [float("nan"), -0.0]]),
        [{"probability": 0.5, "label": 1}],
    ],
    ids=["frame", "series", "nullable-int", "ndarray", "list"],
)
def test_the_serialiser_writes_the_bytes_of_predictions_to_json(outputs):
    import io

    from mlflow.pyfunc.scoring_server import predictions_to_json

    buffer = io.StringIO()
    predictions_to_json(outputs, buffer)
    assert mlflow_serialiser()(outputs) == buffer.getvalue().encode()
