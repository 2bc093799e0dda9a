"""A plugin whose import fails, as a plugin with a missing dependency would."""

raise ImportError("clitest-broken needs the package 'not_installed_dependency'")
