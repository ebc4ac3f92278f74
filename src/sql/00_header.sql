-- tst extension install script, version 0.2.0.
-- Assembled by the Makefile from src/sql/*.sql in name order.

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION tst" to load this file. \quit
