"""Reports: the evaluation report (`frgb report`: `evaluation` with its `figures`) and the
Markdown of every report frgb writes (`markdown`, which needs no plotting library)."""
