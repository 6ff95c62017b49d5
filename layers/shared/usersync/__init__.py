"""usersync: keeps a DynamoDB copy of Clerk users true (webhooks, authorizer sync, health).

Nothing is imported here: each handler imports only the modules its path needs (cold start).
"""
