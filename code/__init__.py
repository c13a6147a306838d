"""saccade: a PyTorch framework for models of human gaze (fixation densities and scanpaths)."""
