"""FIXME-DOC package"""
