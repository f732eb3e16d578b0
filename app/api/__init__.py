"""HTTP edge: routes, schemas, dependencies, error mapping."""
