"""Code shared by the apps: settings, schema, job format, embedding and the index client."""
