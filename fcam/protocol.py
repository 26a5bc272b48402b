"""The evaluation protocol's fixed numbers (Choe et al., CVPR 2020, "wsolevaluation"), defined once.

Configs, commands, evaluators and the training loop take their defaults from here, so changing the
protocol means changing one line. ``fcam.metrics.reference`` keeps its own literal defaults on
purpose: it is the independent check of the fast path. See docs/protocol.md.
"""

# Step between the score thresholds of MaxBoxAcc and PxAP: np.arange(0, 1, 0.001), 1000 thresholds.
CAM_CURVE_INTERVAL = 0.001
# Side at which score maps and boxes are compared (maps are resized to it, boxes rescaled).
EVAL_SIZE = 224
# IoU thresholds (percent) of MaxBoxAccV2; MaxBoxAcc uses 50 only.
IOU_THRESHOLDS = (30, 50, 70)
