"""DynamoDB: the item codec, conditional writes, records, one module per table."""
