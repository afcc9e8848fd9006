namespace Cfn.Tests.Infrastructure;

/// <summary>The checked-out repository the tests run from: docs, examples, rules and benches are read from it.</summary>
public static class Repository
{
    /// <summary>The folder holding cfn.slnx, found by walking up from the test binaries.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The absolute path of <paramref name="relative"/> (with '/' separators) in the repository.</summary>
    public static string PathOf(string relative) => Path.Combine(Root, relative.Replace('/', Path.DirectorySeparatorChar));

    private static string FindRoot()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "cfn.slnx")))
        {
            root = root.Parent;
        }

        return root?.FullName ?? throw new InvalidOperationException("no cfn.slnx above " + AppContext.BaseDirectory);
    }
}
