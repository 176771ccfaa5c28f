#include <libpq-fe.h>

// libpq defines the error field codes as character-literal macros, which Swift does not import.
static const int AT_PG_DIAG_SQLSTATE = PG_DIAG_SQLSTATE;
static const int AT_PG_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY;
static const int AT_PG_DIAG_MESSAGE_DETAIL = PG_DIAG_MESSAGE_DETAIL;
static const int AT_PG_DIAG_MESSAGE_HINT = PG_DIAG_MESSAGE_HINT;
