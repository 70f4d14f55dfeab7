"""How circuits, pubs and results are written down (QPY, JSON) and checked before anything is stored."""
