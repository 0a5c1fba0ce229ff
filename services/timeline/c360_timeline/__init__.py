"""The timeline service: projects every published event into the customer timeline and profile."""
