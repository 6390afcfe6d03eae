"""esjax's experiments: presets, the ES paper's Table 3 reproduced, research scripts."""
