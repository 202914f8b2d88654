"""Face extraction at scale: every face of videos and image folders as crops + ``index.jsonl``.

    from livefaces.extract import ExtractOptions, extract
    report = extract(["movie.mp4", "photos/"], "faces/", ExtractOptions(stride=2, resize=0.5))
    print(report.frames, report.faces, report.fps)
    extract(["movie.mp4"], "faces/", cluster="local")   # on Ray (the ray extra): cluster.py
"""

from .job import extract
from .options import ClusterOptions, ExtractOptions
from .output import ExtractReport, Progress

__all__ = ["ClusterOptions", "ExtractOptions", "ExtractReport", "Progress", "extract"]
