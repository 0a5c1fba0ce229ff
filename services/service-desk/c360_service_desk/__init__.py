"""The service desk: tickets from every channel, with the customer's 360 context."""
