"""What Clerk sends: payload models per entity, session tokens, webhook verification, the Backend API."""
