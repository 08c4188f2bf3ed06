"""``lumisurf batch``: many scenes, one pipeline each, as Ray tasks (``runner``), resumable per scene
(``scene``), from a YAML spec (``spec``), summed up in one table (``table``)."""
