/* exit7.c: the guest's exit status becomes vsnap's. */
int main(void) { return 7; }
