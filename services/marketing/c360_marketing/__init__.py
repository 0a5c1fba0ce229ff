"""c360 marketing: live segments and consent-aware campaigns."""
