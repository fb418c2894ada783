"""Specs the zoo tests (and the latency tests) share."""

# One small spec holding every new kind and option (each block's input width follows from the last).
EVERY_KIND = {
    "name": "every_kind", "family": "test",
    "stem": {"channels": 24, "kind": "mobileone", "act": "relu"},
    "stages": [
        [{"kind": "fused", "out_channels": 24, "expansion": 2, "act": "relu", "se": {"ratio": 0.25}},
         {"kind": "uib", "out_channels": 32, "stride": 2, "kernel": 3, "start_kernel": 3, "expansion": 3},
         {"kind": "uib", "out_channels": 32, "kernel": 0, "start_kernel": 5, "end_kernel": 3, "expansion": 2},
         {"kind": "uib", "out_channels": 32, "kernel": 0, "expansion": 2, "se": {"ratio": 0.25}}],
        [{"kind": "mobileone", "out_channels": 32, "stride": 2, "groups": 32, "branches": 2},
         {"kind": "mobileone", "out_channels": 48, "kernel": 1, "branches": 3, "se": {"ratio": 0.25}},
         {"kind": "mobileone", "out_channels": 48, "kernel": 3, "groups": 2}],
        [{"kind": "shuffle_v1", "out_channels": 96, "stride": 2, "mid_channels": 24, "groups": 3, "first_groups": 1},
         {"kind": "shuffle_v1", "out_channels": 96, "mid_channels": 24, "groups": 3},
         {"kind": "fire", "out_channels": 96, "mid_channels": 16},
         {"kind": "fire", "out_channels": 128, "stride": 2, "mid_channels": 16}],
    ],
    "head": {"fc_channels": 64, "fc_act": "relu", "fc_norm": True, "dropout": 0.0, "num_classes": 10},
}
