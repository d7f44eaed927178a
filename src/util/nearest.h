/* The nearest of a list of names to a misspelt one, for "did you mean"
 * hints in error messages (unknown API parameters, unknown CLI options). */
#ifndef MZ_UTIL_NEAREST_H
#define MZ_UTIL_NEAREST_H

#include <stddef.h>

/* Edit distance (insertions, deletions, substitutions, transpositions of
 * neighbours) between a and b; words longer than 64 bytes count as far. */
size_t mz__edit_distance(const char *a, const char *b);

/* The name in names[0..n) closest to word, or NULL when none is close
 * enough to be a likely typo (distance at most a third of its length, at
 * least 2). Returns one of names (borrowed). */
const char *mz__nearest_name(const char *word, const char *const *names, size_t n);

#endif
