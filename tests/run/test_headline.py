"""The headline's compression sentence: what was kept, and why a step was dropped."""

from carve.run.report import headline
from carve.run.state import RunState


def _row(step, latency, top1, kept=True, dropped=None):
    return dict(step=step + ("" if kept else " (not kept)"), params_m=1.0, macs_m=100.0, size_mb=4.0,
                latency_ms=latency, runtime="openvino", top1=top1, kept=kept, dropped=dropped)


def _text(tmp_path, rows, max_drop=1.0):
    state = RunState(tmp_path)
    state.mark_done("compress", dict(winner="found", name="carve_found", input_size=224, runtime="openvino",
                                     max_drop=max_drop, rows=rows, verdicts=[]), "hash", 1.0)
    return headline(state)[0].text


def test_a_step_past_the_accuracy_budget_is_named_with_its_loss(tmp_path):
    text = _text(tmp_path, [_row("original", 2.0, 26.5), _row("prune", 1.6, 24.0, False, "accuracy"),
                            _row("fold", 2.0, 26.5, False, "speed"), _row("int8 (openvino)", 1.25, 25.9),
                            _row("export", 1.25, 25.9)])
    assert "Compressed carve_found: 1.60x the speed of the uncompressed model in openvino" in text
    assert "top-1 26.50 -> 25.90 %" in text
    assert "prune lost 2.50 top-1 points against the uncompressed model, more than compress.max_drop (1)" in text
    assert "fold was measured at 1.00x the speed of the model before it and not kept" in text


def test_when_no_step_pays_within_the_budget_the_headline_says_so(tmp_path):
    text = _text(tmp_path, [_row("original", 2.0, 26.5), _row("prune", 1.6, 24.0, False, "accuracy"),
                            _row("int8 (onnxruntime)", 3.0, 26.0, False, "speed"), _row("export", 2.0, 26.5)])
    assert "no step both paid in openvino at 224 px and kept top-1 within 1 point(s)" in text
    # speed compared with the model the gate compared it with: the original, not the dropped pruning
    assert "int8 (onnxruntime) was measured at 0.67x the speed of the model before it" in text


def test_a_step_the_speed_gate_dropped_is_quoted_with_the_gates_own_pair(tmp_path):
    # the final table times every row together and can read otherwise than the pair that decided
    fold = dict(_row("fold", 1.19, 25.9, False, "speed"), gate_speedup=1.02)
    text = _text(tmp_path, [_row("original", 1.46, 26.5), _row("prune", 1.11, 25.9), fold, _row("export", 1.09, 25.9)])
    assert "fold was measured at 1.02x the speed of the model before it (timed as a pair) and not kept" in text
    assert "0.93x" not in text


def test_the_compressed_speed_up_is_the_final_tables_paired_figure_where_recorded(tmp_path):
    # medians 2.0 and 1.25 ms say 1.60x; the rounds, paired, said 1.45x: the headline quotes the pairs
    rows = [dict(_row("original", 2.0, 26.5), speedup=1.0), dict(_row("prune", 1.25, 25.9), speedup=1.45),
            dict(_row("export", 1.25, 25.9), speedup=1.45)]
    text = _text(tmp_path, rows)
    assert "Compressed carve_found: 1.45x the speed of the uncompressed model" in text
    assert "1.60x" not in text
