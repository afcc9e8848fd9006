namespace Cfn.Coordination.Tests.Examples;

/// <summary>Reads what the docs show of the compiled examples: a marked region of an example file, a doc's code block.</summary>
internal static class ExampleSources
{
    /// <summary>The folder holding cfn.slnx.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The lines between <c>// {marker}:begin</c> and <c>// {marker}:end</c> of an example, without their indent.</summary>
    public static List<string> Region(string exampleFile, string marker)
    {
        var source = File.ReadAllLines(Path.Combine(Root, "examples", "Cfn.Examples", exampleFile));
        var begin = Array.FindIndex(source, l => l.Trim() == $"// {marker}:begin");
        var end = Array.FindIndex(source, l => l.Trim() == $"// {marker}:end");
        Assert.True(begin >= 0 && end > begin, $"{exampleFile} has no {marker} markers");
        var indent = source[begin].Length - source[begin].TrimStart().Length;
        return source[(begin + 1)..end].Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()).ToList();
    }

    /// <summary>The first <c>```csharp</c> block after the heading that starts with <paramref name="heading"/> in <paramref name="document"/>.</summary>
    public static string[] CSharpBlock(string document, string heading)
    {
        var lines = File.ReadAllLines(Path.Combine(Root, document));
        var at = Array.FindIndex(lines, l => l.StartsWith(heading, StringComparison.Ordinal));
        Assert.True(at >= 0, $"{document} has no '{heading}' section");
        var open = Array.FindIndex(lines, at, l => l == "```csharp");
        var close = Array.FindIndex(lines, open + 1, l => l == "```");
        Assert.True(open > at && close > open, $"the '{heading}' section of {document} has no csharp block");
        return lines[(open + 1)..close];
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "cfn.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("cfn.slnx not found above " + AppContext.BaseDirectory);
    }
}
