"""The MTCNN model files shipped with livefaces (installed as ``livefaces.models``).

A regular package, not a namespace one: ``importlib.resources.files`` must give a real
directory here, which it does not for namespace packages (``MultiplexedPath``).
"""
