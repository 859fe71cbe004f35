"""The built-in components. Each module is an ordinary plugin with its own entry point in the
``backproplab`` group, so the built-ins load through the same path as any third party's."""
