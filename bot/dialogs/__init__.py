"""Helpers of the bot's multi-step dialogs (state kept in the Dispatcher's FSM storage)."""
