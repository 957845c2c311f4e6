#include "support/check.h"
int main(void) { return check_summary("test_dp_noise"); }
