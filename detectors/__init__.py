"""Camera detectors on OpenCV: motion gate, street stalls, construction dust (issue #5)."""
