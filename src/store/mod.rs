//! The store: the only code that speaks SQL (SQLite or PostgreSQL, through sqlx).
