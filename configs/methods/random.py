# Random codes: the chance row of every table.
method = dict(type="random")
