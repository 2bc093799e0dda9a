"""The plugin API: hook specifications, the plugin manager that discovers families through the
``xlm`` entry-point group, the components a family registers and the Protocols they satisfy."""
