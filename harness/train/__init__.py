"""Training: the shared loop (engine), 4-step alternating and stage-wise schemes, R-CNN's stages and feature extraction."""
