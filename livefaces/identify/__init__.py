"""Who is it: recognising known people in detected faces.

:class:`Recognizer` turns faces into 128-d embeddings (dlib's ResNet; the ``identify`` extra:
``pip install 'livefaces[identify]'``), :class:`Gallery` holds the known people of a
``--people`` folder and :meth:`Gallery.match` names the person an embedding belongs to
(:class:`Match`; ``name`` ``None`` = unknown). Importing this package does not import dlib:
:class:`Recognizer` does, and raises :class:`~livefaces.errors.MissingExtraError` without it.

Example::

    from livefaces.identify import Gallery, Recognizer

    rec, gallery = Recognizer(), Gallery.load("people")
    for face, emb in zip(faces, rec.embed(rgb, faces)):
        m = gallery.match(emb)
        print(m.name or "unknown", round(m.distance, 2))
"""

from __future__ import annotations

from .gallery import DEFAULT_PEOPLE_DIR, PEOPLE_ENV, Gallery, Match, default_people_dir
from .recognizer import DEFAULT_THRESHOLD, Recognizer

__all__ = ["DEFAULT_PEOPLE_DIR", "DEFAULT_THRESHOLD", "PEOPLE_ENV", "Gallery", "Match", "Recognizer",
           "default_people_dir"]
