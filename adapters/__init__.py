"""Chat platforms. The only package allowed to import slack_bolt, slack_sdk or discord."""
