"""The latency model protocol: the table is one, and the engine's callers need nothing beyond it."""

from agent.measure import LatencyModel
from agent.measure.lut import LatencyTable


def test_the_latency_table_is_a_latency_model():
    table = LatencyTable(key="k", device="cpu", batch_size=8, dense_ms=2.0, layers={}, calib_x=[0.5],
                         calib_ratio=[0.6], meta={"threads": 1})
    assert isinstance(table, LatencyModel)
    assert table.predict_ratio({}) == 1.0


def test_an_object_without_predict_ratio_is_not_a_latency_model():
    class OnlyPredict:
        device, batch_size, dense_ms, meta = "cpu", 1, 1.0, {}

        def predict(self, kept_channels):
            return 1.0

    assert not isinstance(OnlyPredict(), LatencyModel)
