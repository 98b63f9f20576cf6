"""``cnnkit studio``: the whole workflow (data, training, review, trying, shipping) in one local page."""
