"""The customer service: identity, contact points, contact persons, consent and owner."""
