"""The web UIs (Streamlit scripts): ``manager.py`` and ``ops.py``, run by ``persistq ui``.

Importing this package imports nothing else: the scripts are files that Streamlit runs.
"""
