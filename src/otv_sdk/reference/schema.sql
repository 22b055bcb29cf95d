-- The reference PVS: a small but complete practice calendar, the way a real PVS keeps one.
-- Instants are UTC seconds since the epoch; wall-clock rules are 'HH:MM' in the practice's zone;
-- dates are ISO 'YYYY-MM-DD'. Bump user_version when this changes.
PRAGMA user_version = 2;

CREATE TABLE IF NOT EXISTS practice (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    display_name  TEXT NOT NULL,
    time_zone     TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS practitioners (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS rooms (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS columns (
    id              TEXT PRIMARY KEY,
    position        INTEGER NOT NULL,
    display_name    TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('practitioner', 'room')),
    practitioner_id TEXT REFERENCES practitioners (id),
    room_id         TEXT REFERENCES rooms (id)
);

-- Regular weekly hours per column (weekday: ISO, 1 = Monday).
CREATE TABLE IF NOT EXISTS weekly_hours (
    column_id  TEXT NOT NULL REFERENCES columns (id),
    weekday    INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    start_time TEXT NOT NULL,
    end_time   TEXT NOT NULL CHECK (end_time > start_time)
);

-- Shifts (Schichten): on every day from valid_from to valid_until the column works exactly the
-- shift's spans of that day's weekday instead of its weekly hours. A weekday without spans, or a
-- shift without any, is a day off; the spans of several shifts on one day add up. One row per
-- shift, so that a shift without spans exists too; its spans in shift_spans.
CREATE TABLE IF NOT EXISTS shifts (
    id          INTEGER PRIMARY KEY,
    column_id   TEXT NOT NULL REFERENCES columns (id),
    valid_from  TEXT NOT NULL,
    valid_until TEXT NOT NULL CHECK (valid_until >= valid_from)
);
CREATE INDEX IF NOT EXISTS shifts_by_column ON shifts (column_id, valid_from);

CREATE TABLE IF NOT EXISTS shift_spans (
    shift_id    INTEGER NOT NULL REFERENCES shifts (id) ON DELETE CASCADE,
    weekday     INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    start_time  TEXT NOT NULL,
    end_time    TEXT NOT NULL CHECK (end_time > start_time)
);
CREATE INDEX IF NOT EXISTS shift_spans_by_shift ON shift_spans (shift_id);

-- Public holidays and other closed days; column_id NULL closes the whole practice.
CREATE TABLE IF NOT EXISTS closed_days (
    day        TEXT NOT NULL,
    column_id  TEXT REFERENCES columns (id),
    label      TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS appointment_type_groups (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS appointment_types (
    id               TEXT PRIMARY KEY,
    position         INTEGER NOT NULL,
    display_name     TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL CHECK (duration_minutes > 0),
    visit_kind       TEXT NOT NULL CHECK (visit_kind IN ('first', 'follow_up', 'any')),
    group_id         TEXT REFERENCES appointment_type_groups (id),
    buffer_minutes   INTEGER NOT NULL DEFAULT 0,
    min_lead_minutes INTEGER NOT NULL DEFAULT 0,
    max_horizon_days INTEGER
);

CREATE TABLE IF NOT EXISTS appointment_type_columns (
    appointment_type_id TEXT NOT NULL REFERENCES appointment_types (id),
    column_id           TEXT NOT NULL REFERENCES columns (id),
    PRIMARY KEY (appointment_type_id, column_id)
);

-- Terminvorgabebereiche; column_id NULL means every column.
CREATE TABLE IF NOT EXISTS booking_areas (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    column_id     TEXT REFERENCES columns (id),
    valid_from    TEXT,
    valid_until   TEXT
);

CREATE TABLE IF NOT EXISTS booking_area_spans (
    booking_area_id TEXT NOT NULL REFERENCES booking_areas (id),
    weekday         INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    start_time      TEXT NOT NULL,
    end_time        TEXT NOT NULL CHECK (end_time > start_time)
);

CREATE TABLE IF NOT EXISTS booking_area_types (
    booking_area_id     TEXT NOT NULL REFERENCES booking_areas (id),
    appointment_type_id TEXT NOT NULL REFERENCES appointment_types (id),
    PRIMARY KEY (booking_area_id, appointment_type_id)
);

-- Absences; the reason is kept for staff and never leaves the PVS.
CREATE TABLE IF NOT EXISTS absences (
    id         INTEGER PRIMARY KEY,
    column_id  TEXT NOT NULL REFERENCES columns (id),
    start_utc  INTEGER NOT NULL,
    end_utc    INTEGER NOT NULL CHECK (end_utc > start_utc),
    reason     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS absences_by_column ON absences (column_id, start_utc);

-- birth_date is 'YYYY-MM-DD', or 'YYYY-MM' / NULL where the practice does not know it fully.
-- (Databases from before the gateway matched patients itself also have an unused match_key column.)
CREATE TABLE IF NOT EXISTS patients (
    id                TEXT PRIMARY KEY,
    given_name        TEXT NOT NULL,
    family_name       TEXT NOT NULL,
    birth_date        TEXT,
    active            INTEGER NOT NULL DEFAULT 1,
    note              TEXT NOT NULL DEFAULT '',
    created_online_by TEXT,
    create_time       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS patients_by_birth_date ON patients (birth_date);

CREATE TABLE IF NOT EXISTS patient_contacts (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    kind       TEXT NOT NULL CHECK (kind IN ('phone', 'mobile', 'email')),
    value      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS contacts_by_patient ON patient_contacts (patient_id);

-- Einwilligungen per partner: open / granted / denied, with evidence and who set it.
CREATE TABLE IF NOT EXISTS consents (
    patient_id   TEXT NOT NULL REFERENCES patients (id),
    partner_id   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('open', 'granted', 'denied')),
    decide_time  INTEGER,
    method       TEXT CHECK (method IN ('online_form', 'paper', 'verbal')),
    text_version TEXT,
    set_by       TEXT CHECK (set_by IN ('partner', 'practice')),
    update_time  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (patient_id, partner_id)
);
CREATE INDEX IF NOT EXISTS consents_by_partner ON consents (partner_id, state, patient_id);

-- Every consent change, for the practice's records.
CREATE TABLE IF NOT EXISTS consent_events (
    id          INTEGER PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    partner_id  TEXT NOT NULL,
    state       TEXT NOT NULL,
    set_by      TEXT NOT NULL,
    at          INTEGER NOT NULL
);

-- Idempotency of the gateway's patient writes: CreatePatient and AppendPatientNote request ids.
CREATE TABLE IF NOT EXISTS patient_requests (
    request_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients (id)
);

-- Everything that occupies a column: appointments (one row per column they occupy) and
-- reservations (Reservierungen, no patient). Busy time is read from here.
-- Online bookings carry the gateway's reference, the partner as source, a category (colour) and
-- whether they had to be entered as an extra appointment (Zusatztermin).
CREATE TABLE IF NOT EXISTS calendar_entries (
    id                  INTEGER PRIMARY KEY,
    column_id           TEXT NOT NULL REFERENCES columns (id),
    start_utc           INTEGER NOT NULL,
    end_utc             INTEGER NOT NULL CHECK (end_utc > start_utc),
    kind                TEXT NOT NULL CHECK (kind IN ('appointment', 'reservation')),
    appointment_type_id TEXT REFERENCES appointment_types (id),
    patient_id          TEXT REFERENCES patients (id),
    reference           TEXT UNIQUE,
    source_partner      TEXT,
    category            TEXT,
    extra               INTEGER NOT NULL DEFAULT 0
);
-- Covering: a 24-month busy-time read is answered from the index alone.
CREATE INDEX IF NOT EXISTS entries_by_column_time ON calendar_entries (column_id, start_utc, end_utc);
