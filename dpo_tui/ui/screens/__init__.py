"""Screens of the console: one module per screen; dialogs beside them."""
