"""Camera detectors (issue #5): sources, a motion gate, stall and dust detectors, events and evidence.

Frames are analysed at a fixed working resolution (`pipeline.WORK_WIDTH` pixels wide) whatever the camera
delivers; boxes and zones are converted to and from source pixels at the edges.
"""
